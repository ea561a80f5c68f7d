"""`python -m demohub.backends.ray head --parent PID -- <ray start args>`: the
watcher `LocalRay` starts around `ray start --head --block` (head.py)."""

import sys

from demohub.backends.ray.head import HEAD_MODULE, _head_main, _node_main

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "head":
        sys.exit(_head_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "node":  # LocalRay.add_node: a second raylet
        sys.exit(_node_main(sys.argv[2:]))
    sys.exit(f"usage: python -m {HEAD_MODULE} head --parent PID -- <ray start args>")
