from fusenfs.cli import main

raise SystemExit(main())
