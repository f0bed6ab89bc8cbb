"""Tools that prove and measure the harness but are not part of it (not in the wheel): the defect injector the
validation tests plant defects with, the benchmarks (`nox -s bench`), and the long org sessions
(`nox -s small|medium|enterprise|load`)."""
