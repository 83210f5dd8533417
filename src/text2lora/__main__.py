"""`python -m text2lora ...` runs the `t2l` command line (for environments without the console script)."""

from text2lora.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
