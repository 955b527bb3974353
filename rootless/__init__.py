"""prun: rootless containers.

The package name is ``rootless``; the command is ``prun``. Importing this
package must stay cheap (it is on every command's start path): no heavy
imports here.
"""

__version__ = "0.1.0"
