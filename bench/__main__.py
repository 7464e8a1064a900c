"""``python -m bench [--quick] [--only NAME[,NAME]]``: the benchmark suite (bench/suite.py)."""

from bench.suite import main

raise SystemExit(main())
