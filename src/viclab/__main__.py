from viclab.cli import main

raise SystemExit(main())
