"""`python -m invoicer`: the invoicer service alone (as `meterflow invoicer`)."""

from __future__ import annotations

import os
import sys

from invoicer.service import main
from meterflow.logs import configure_logging
from meterflow.settings import Settings

if __name__ == "__main__":
    configure_logging(os.environ.get("METERFLOW_LOG_LEVEL", "INFO"))
    sys.exit(main(Settings.from_env()))
