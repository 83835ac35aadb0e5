"""
C{python -m oauthd.ctl}: the same as the C{oauthctl} command.
"""

from oauthd.ctl.command import main

raise SystemExit(main())
