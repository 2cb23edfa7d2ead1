"""``python -m devstack.dts``: see ``devstack.dts.cli``."""

from devstack.dts.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
