"""Population-shift validation of the committed demo model on the demo survey (SYNTHETIC):
``validation.studies.population_shift`` with 1,500 stars at S/N 50, written to
studies/population_shift/population_shift.json and printed as the report's table.

Usage: python studies/population_shift/run.py [DEMO_DIR]   (default data/demo; `ddpayne demo` first)
"""
import json
import sys
from pathlib import Path

from ddpayne_core.io.store import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.simulate import TRUTH_EMULATOR
from ddpayne_core.validation.report import population_shift_markdown
from ddpayne_core.validation.studies import population_shift

if __name__ == "__main__":
    demo = Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo")
    shift = population_shift(open_store(demo / "survey"), EmulatorModel.load(demo / "model.pt"),
                             TRUTH_EMULATOR, n_stars=1500, snr=50.0)
    atomic_write_text(Path(__file__).parent / "population_shift.json", json.dumps(shift, indent=1))
    print("\n".join(population_shift_markdown(shift)))
