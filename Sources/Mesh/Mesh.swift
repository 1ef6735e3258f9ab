// Mesh: the libuv runtime that interprets Gossip directives.
import Gossip
