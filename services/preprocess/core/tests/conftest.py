import sys
from pathlib import Path

# The NumPy references live next to the tests; make them importable under
# --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))
