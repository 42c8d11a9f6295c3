"""``python -m fedcredit`` is the ``fedcredit`` command."""

from fedcredit.cli.main import main

raise SystemExit(main())
