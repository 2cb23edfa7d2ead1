"""The local stack: real wire peers and stand-ins used by tests, `make demo` and `make stack`.

Not deployed (see .gcloudignore): production code never imports from here.
"""
