"""``python -m weightaudit``."""

from weightaudit.cli import main

if __name__ == "__main__":
    main()
