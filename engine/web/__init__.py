"""The web workspace: the REST API at /api/v1 and the server-rendered pages, over the same service layer as the CLI.

`app.create_app` assembles it (the only place middleware and routers meet); `auth` signs people in; `problems`
turns engine errors into RFC 9457 problem details; `api` and `pages` hold the routes.
"""
