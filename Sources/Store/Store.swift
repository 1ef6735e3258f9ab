// Store: persistence (SQLite manifest, chunk files, node identity).
@_exported import Gossip
