"""Images: references, registries, the local store, safe layer unpacking.

Entry points for the rest of prun: ``store.resolve_for_run`` (what ``prun
run`` needs from an image), ``pull.pull``, ``archive`` (load/save/import),
``push.push`` and ``manage`` (images/rmi/tag/inspect/prune/history).
"""
