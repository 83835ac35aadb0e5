"""
Administration, as the control socket asks for it: clients, users and
tokens changed by hand, under the same rules as every other change.
"""
