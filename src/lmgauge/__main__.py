from lmgauge.cli import main

raise SystemExit(main())
