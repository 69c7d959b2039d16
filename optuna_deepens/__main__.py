"""``python -m optuna_deepens``: the same command line as ``optuna-deepens``."""

from optuna_deepens.cli import main

raise SystemExit(main())
