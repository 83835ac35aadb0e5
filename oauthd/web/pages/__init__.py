"""
The browser pages of the authorization endpoint: login, second factor,
consent, the error page and the C{form_post} answer, rendered on the server
with C{twisted.web.template}, with one small stylesheet served by the
daemon and no other resource.
"""
