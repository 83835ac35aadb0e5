"""
C{oauthctl}, the admin's client of the control socket (L{oauthd.ctl.cli});
L{oauthd.ctl.command} is the command itself. It loads nothing of the daemon
but the wire schema, L{oauthd.control.wire}.
"""
