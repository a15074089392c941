"""Where the daemon is and how patient the tests are (ASan builds run slower)."""
import os

BUILD = os.environ.get("SLUICE_BUILD") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
SLUICED = os.path.join(BUILD, "sluiced")
ASAN = os.environ.get("SLUICE_ASAN") == "1"
# Multiplier for waits that guard against hangs (never for performance assertions).
SCALE = 3 if ASAN else 1
TIMEOUT = 5 * SCALE  # default socket / response timeout
