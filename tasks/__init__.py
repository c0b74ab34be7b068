"""SeqIO tasks of every benchmark and method, registered on import.

T5X loads them with `MIXTURE_OR_TASK_MODULE = "tasks"` (or `import tasks` in a gin file), so
importing this package registers `kard_<benchmark>_<method>` for every benchmark in `BENCHMARKS`,
reading the prepared data under $KARD_DATA_DIR (default: work_dir/data in the working
directory) when a dataset is requested. Code that prepares data elsewhere calls
`register_benchmark(benchmark, data_dir, ...)` itself. See `tasks.registry` for the task list
and the vocabulary settings, `tasks.records` for the files each task reads.
"""

from tasks.registry import (BENCHMARKS, DEFAULT_DATA_DIR, MIXTURES, PREFIX, data_root,
                            register_all, register_benchmark, task_name, task_names)
from tasks.records import TASKS

REGISTERED = register_all()

__all__ = ["BENCHMARKS", "DEFAULT_DATA_DIR", "MIXTURES", "PREFIX", "REGISTERED", "TASKS",
           "data_root", "register_all", "register_benchmark", "task_name", "task_names"]
