"""Attachments: files people attach to a message (docs/attachments.md).

Uploads are read in a child process with a time and a memory limit (`processing`): the type is
decided from the bytes (`sniff`), images are decoded and re-encoded without their metadata
(`images`), documents become text (`documents`). What is kept is stored by content hash through
Django's storage API and owned exactly as conversations are (`store`).

The modules the child runs (`child`, `sniff`, `images`, `documents`) import nothing of Django, so
the child starts quickly and holds no database connection.
"""
