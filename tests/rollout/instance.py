#!/usr/bin/env python3
"""Starts, stops or restarts one service instance kept in a folder (see harness.Instance), the
way `systemctl start|stop|restart` would for a unit: restart is SIGTERM, wait for the exit (the
service drains first), start whatever binary the folder's `bin` names, wait until it is ready.

Usage: instance.py start|stop|restart FOLDER
"""
import sys

from harness import Instance


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop", "restart"):
        sys.exit(__doc__)
    action, inst = sys.argv[1], Instance(sys.argv[2])
    if action in ("stop", "restart"):
        inst.stop()
    if action in ("start", "restart"):
        inst.start()


if __name__ == "__main__":
    main()
