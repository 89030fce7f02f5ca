"""`revetl init DIR`: a new project, ready to build, test its audiences and sync to a local emulator.

`project.py` writes the files (from `files/`, shipped with the package); the project builds revetl's
models as the dbt package the installed revetl carries (revetl/warehouse/package.py).
"""

from revetl.scaffold.project import WAREHOUSES, Scaffold, create_project

__all__ = ["WAREHOUSES", "Scaffold", "create_project"]
