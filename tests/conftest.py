from pathlib import Path
import sys

# Helper modules of the tests (synthetic objectives, worker scripts) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))
