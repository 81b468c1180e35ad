#!/bin/sh
# The program in its private virtualenv; exec keeps the process (and its signals) the
# interpreter's own, as `service install` and the packaged units start it.
exec /usr/lib/tvmaniac-refreshd/bin/python -m tvmaniac_refreshd "$@"
