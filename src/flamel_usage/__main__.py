from flamel_usage.cli import main

raise SystemExit(main())
