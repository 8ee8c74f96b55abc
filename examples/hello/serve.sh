#!/bin/sh
# Prints what the image holds; with --serve, serves it with busybox httpd on port 8080.
cat "$SITE/built.txt"
ls -ln "$SITE"
if [ "${1:-}" = "--serve" ]; then exec httpd -f -p 8080 -h "$SITE"; fi
