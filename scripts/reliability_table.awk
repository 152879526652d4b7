# reliability_table.awk: the reliability figures of one VM run as rows of the README's
# reliability table (Markdown), from its RPD-RELIABILITY lines (reliability-FLAVOUR.txt, one
# "RPD-RELIABILITY: mode=MODE key=value ..." line per e2e, stress, inject and lifecycle run).
# Used by scripts/test.sh:
#   awk -v f=FLAVOUR -v reports=N -f scripts/reliability_table.awk reliability-FLAVOUR.txt
# f: the kernel flavour (default, debug); reports: the count of kernel reports in its log.
# Each stress row is labelled with the parameter set the module ran with, as the stress
# read it from the module's own stats.
{
	delete kv
	for (i = 2; i <= NF; i++) { n = index($i, "="); kv[substr($i, 1, n - 1)] = substr($i, n + 1) }
	m = kv["mode"]
}
m == "e2e" {
	sets++; cases += kv["cases"]; passed += kv["passed"]; bad += kv["bad_inputs"]
	names = names (names == "" ? "" : ", ") kv["params"]
}
m == "stress" || m == "inject" { leaked += kv["leaked"]; lost += kv["lost"]; kept += kv["memcg_kept"]; runs++ }
m == "stress" {
	printf "| stress (%s kernel, %s): seed %s, %s processes x %s threads | %s operations, %s faults, %s forks, %s MADV_DONTNEED, %s debugfs reads in %s s; %s contents lost |\n", f, kv["params"], kv["seed"], kv["procs"], kv["threads"], kv["ops"], kv["faults"], kv["forks"], kv["dontneed"], kv["debugfs_reads"], kv["seconds"], kv["lost"]
}
m == "inject" {
	printf "| fault injection (%s kernel): seed %s, %s x %s | %s operations, %s injected failures, %s clean ENOMEM errors (open %s: %s the module's, %s the kernel's; mmap %s, the kernel's), oom counter +%s, %s contents lost |\n", f, kv["seed"], kv["procs"], kv["threads"], kv["ops"], kv["injected"], kv["enomem"], kv["open_enomem"], kv["open_enomem_module"], kv["open_enomem_kernel"], kv["mmap_enomem"], kv["oom"], kv["lost"]
}
m == "mix" {
	printf "| 4 KiB and PMD faults mixed (%s kernel, huge=1): %s threads, %s ranges of 2 MiB | %s rounds, %s THP toggles, %s PMDs mapped, %s 4 KiB faults in %s s; %s contents lost |\n", f, kv["threads"], kv["ranges"], kv["rounds"], kv["toggles"], kv["pmds"], kv["faults"], kv["seconds"], kv["lost"]
}
m == "lifecycle" {
	printf "| insmod/traffic/rmmod cycles (%s kernel) | %s; Slab %s kB, free memory %s kB, memcg kernel memory %s kB |\n", f, kv["cycles"], kv["slab_kb"], kv["free_kb"], kv["memcg_kernel_kb"]
}
END {
	printf "| end-to-end cases (%s kernel) | %d in %d parameter sets (%s), %d passing |\n", f, cases, sets, names, passed
	printf "| bad inputs tried (%s kernel) | %d per parameter set, %d in all |\n", f, sets ? bad / sets : 0, bad
	printf "| kernel reports (%s kernel) | %d |\n", f, reports
	printf "| frames leaked after all closes (%s kernel) | %d |\n", f, leaked
	printf "| bytes still charged to the runs' memory cgroups after all closes (%s kernel) | %d in %d runs |\n", f, kept, runs
}
