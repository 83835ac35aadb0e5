"""
C{python -m oauthd.ctl}: the same as the C{oauthctl} command.
"""

from oauthd.ctl.cli import main

raise SystemExit(main())
