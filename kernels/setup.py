"""Builds recsys_kernels' C++ CPU kernels against the installed torch.

Install after torch, without build isolation (the extension must link the same torch):
``pip install --no-build-isolation -e kernels/``. The extension is optional: when no C++
toolchain is available the package still installs, and recsys runs its pure-torch path
(``recsys_kernels.available()`` is False and says why).
"""

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

setup(
    ext_modules=[
        CppExtension(
            "recsys_kernels._C",
            [f"recsys_kernels/csrc/{name}.cpp" for name in ("transform_ids", "grouped_projection", "dot_interaction")],
            depends=["recsys_kernels/csrc/cpu_vec.h", "recsys_kernels/csrc/row_tasks.h"],
            # at::parallel_for is OpenMP in torch's CPU build: without -fopenmp it runs on one thread
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            py_limited_api=True,
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
