"""What the benchmark scripts print about the machine they ran on."""
import os
import re


def cpu_model():
    """The CPU's name, family/model numbers, whether it has AVX-512, and the core count."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
        family = re.search(r"cpu family\s*:\s*(\d+)", info).group(1)
        model = re.search(r"^model\s*:\s*(\d+)", info, re.M).group(1)
        avx512 = "AVX-512" if " avx512f " in info else "no AVX-512"
        return f"{name} (family {family}, model {model}, {avx512}), {os.cpu_count()} cores"
    except (OSError, AttributeError):
        return "unknown"
