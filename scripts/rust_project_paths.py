#!/usr/bin/env python3
"""rust_project_paths.py MODULE_DIR HOST_TOP HOST_ROOT < rust-project.json > rust-project.json

kbuild's rust-analyzer target writes the paths it sees inside the build root: the kernel
tree (/build/...), the Rust sources (/usr/lib/rustlib/src/...), the sysroot (/usr) and the
module's own directory. An editor runs on the host, where those are elsewhere: the module
directory's files are the repository's (HOST_TOP), and every other absolute path is the
build root's (HOST_ROOT + path). Each string of the file that is an absolute path is mapped,
and a relative crate root (kbuild writes the module's so) is made the repository's.
"""
import json
import sys


def to_host(value, module_dir, host_top, host_root):
    if isinstance(value, dict):
        return {
            k: to_host(
                module_dir + "/" + v if k == "root_module" and not v.startswith("/") else v,
                module_dir,
                host_top,
                host_root,
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [to_host(v, module_dir, host_top, host_root) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        if value == module_dir or value.startswith(module_dir + "/"):
            return host_top + value[len(module_dir):]
        return host_root + value
    return value


def main():
    module_dir, host_top, host_root = (a.rstrip("/") for a in sys.argv[1:4])
    project = json.load(sys.stdin)
    json.dump(to_host(project, module_dir, host_top, host_root), sys.stdout, sort_keys=True, indent=4)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
