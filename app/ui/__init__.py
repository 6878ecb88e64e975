"""The web UI: server-rendered pages over Kura's own storage (what is really stored, and why).

Its routes are open to the authorization middleware: the UI authenticates its visitors itself (a
signed session cookie) and asks the same access policies, so a visitor sees and does exactly what
their credentials allow on the v2 API.
"""
