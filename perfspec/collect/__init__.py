"""Collection campaigns: install/uninstall Helm charts on a test cluster while its audit log streams in.

Modules, one job each: ``spec`` (what to install), ``plan`` (the ordered steps), ``helm`` (the Helm
driver, pyhelm3 behind a Protocol), ``cluster`` (kubernetes-client checks behind a Protocol),
``campaign`` (the runner that writes ``manifest.json``), ``receiver`` (audit webhook server),
``tailer`` (audit log-file follower), ``sink`` (the fsync'd, rotated JSON-lines writer both use),
``bodies`` (request/response bodies stripped before storing) and ``labels`` (events -> the campaign
step that caused them).
"""
