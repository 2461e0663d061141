"""The pass/fail bookkeeping the SDK check scripts share."""
import sys

passed = 0


def check(cond, what):
    """Print `ok: what`, or `FAIL: what` and exit 1."""
    global passed
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    passed += 1
    print(f"ok: {what}")


def summary():
    print(f"{passed} passed, 0 failed")
