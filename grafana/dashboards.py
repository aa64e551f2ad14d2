#!/usr/bin/env python3
"""Writes the dcmon Grafana dashboards (grafana/dashboards/*.json).

The JSON files are committed; edit this file and run it again
(`python3 grafana/dashboards.py`) rather than editing the JSON by hand.
An optional argument names another output directory, so that the tests can
regenerate the files elsewhere and compare them with the committed ones.
Every panel reads the data source with uid `dcmon`
(provisioning/datasources/dcmon.yaml). Queries use raw expressions, not the
recording rules, so they work on a bare receiver (which does not evaluate
rules); rules/dcmon-records.yml records the same aggregates for a
Prometheus that does.
"""

import json
import os
import sys

DS = {"type": "prometheus", "uid": "dcmon"}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")

# Regex of the security origins, as in the alert rules.
SECURITY = 'origin=~"(?i).*security.*"'
FAN_MODES = {"0": "standard", "1": "full", "2": "optimal", "3": "pue", "4": "heavy_io"}


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0
        panel = {
            "type": "row",
            "title": title,
            "collapsed": False,
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
            "panels": [],
        }
        self.y += 1
        return self.with_id(panel)

    def with_id(self, panel):
        panel["id"] = self.next_id
        self.next_id += 1
        return panel


def target(expr, legend="", ref="A", instant=False, fmt=None):
    t = {
        "datasource": DS,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        "range": not instant,
        "instant": instant,
    }
    if fmt:
        t["format"] = fmt
    return t


def refs():
    return [chr(ord("A") + i) for i in range(26)]


def timeseries(lay, title, queries, unit="short", w=12, h=8, stack=False, desc="", maxv=None):
    panel = {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": lay.place(w, h),
        "targets": [target(e, l, r) for (e, l), r in zip(queries, refs())],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10 if not stack else 40,
                    "showPoints": "never",
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if maxv is not None:
        panel["fieldConfig"]["defaults"]["max"] = maxv
        panel["fieldConfig"]["defaults"]["min"] = 0
    return lay.with_id(panel)


def stat(lay, title, expr, unit="short", w=4, h=4, thresholds=None, mappings=None, desc=""):
    steps = [{"color": "green", "value": None}]
    for value, color in thresholds or []:
        steps.append({"color": color, "value": value})
    return lay.with_id(
        {
            "type": "stat",
            "title": title,
            "description": desc,
            "datasource": DS,
            "gridPos": lay.place(w, h),
            "targets": [target(expr, "", "A", instant=True)],
            "fieldConfig": {
                "defaults": {
                    "unit": unit,
                    "thresholds": {"mode": "absolute", "steps": steps},
                    "mappings": mappings or [],
                },
                "overrides": [],
            },
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background" if thresholds else "value",
                "graphMode": "none",
                "textMode": "auto",
            },
        }
    )


def value_map(mapping):
    return [
        {
            "type": "value",
            "options": {k: {"text": v, "index": i} for i, (k, v) in enumerate(mapping.items())},
        }
    ]


def table(lay, title, columns, w=24, h=8, join="instance", desc="", hide=()):
    """One instant query per column, merged into one row per `join` labels.

    columns: (header, expr, unit, mapping or None)
    """
    targets = []
    overrides = []
    rename = {}
    for (header, expr, unit, mapping), ref in zip(columns, refs()):
        targets.append(target(expr, header, ref, instant=True, fmt="table"))
        rename[f"Value #{ref}"] = header
        props = [{"id": "unit", "value": unit}]
        if mapping:
            props.append({"id": "mappings", "value": value_map(mapping)})
        overrides.append({"matcher": {"id": "byName", "options": header}, "properties": props})
    if join == "instance":
        # Each host name opens its host dashboard.
        overrides.append(
            {
                "matcher": {"id": "byName", "options": "instance"},
                "properties": [
                    {
                        "id": "links",
                        "value": [
                            {
                                "title": "Host ${__value.raw}",
                                "url": "/d/dcmon-host/dcmon-host?var-instance=${__value.raw}&${__url_time_range}",
                            }
                        ],
                    }
                ],
            }
        )
    excluded = {"Time": True, "__name__": True, "job": True}
    for label in hide:
        excluded[label] = True
    if len(targets) == 1:
        rename = {"Value": columns[0][0]}
    return lay.with_id(
        {
            "type": "table",
            "title": title,
            "description": desc,
            "datasource": DS,
            "gridPos": lay.place(w, h),
            "targets": targets,
            "transformations": [
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {"excludeByName": excluded, "renameByName": rename},
                },
            ],
            "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": overrides},
            "options": {"showHeader": True, "sortBy": [{"displayName": join, "desc": False}]},
        }
    )


def variable(name, label, query, multi=False, include_all=False, regex=""):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-query", "qryType": 1},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "allValue": ".+" if include_all else None,
        "regex": regex,
        "current": {},
        "options": [],
        "hide": 0,
    }


JOB = variable("job", "job", "label_values(dcmon_exporter_build_info, job)", multi=True, include_all=True)


def instance_var(multi):
    return variable(
        "instance",
        "host",
        'label_values(dcmon_exporter_build_info{job=~"$job"}, instance)',
        multi=multi,
        include_all=multi,
    )


def dashboard(uid, title, panels, variables, desc, links=True):
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["dcmon"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": (
            [{"type": "dashboards", "tags": ["dcmon"], "asDropdown": True, "title": "dcmon", "includeVars": False}]
            if links
            else []
        ),
        "panels": panels,
    }


def fleet():
    lay = Layout()
    j = 'job=~"$job"'
    p = [
        stat(lay, "Hosts up", f"count(up{{{j}}} == 1) or vector(0)"),
        stat(lay, "Hosts down", f"count(up{{{j}}} == 0) or vector(0)", thresholds=[(1, "red")]),
        stat(lay, "GPUs", f"count(nvidia_smi_gpu_info{{{j}}}) or vector(0)"),
        stat(lay, "GPU power", f"sum(nvidia_smi_power_draw_watts{{{j}}})", unit="watt"),
        stat(
            lay,
            "Hosts needing a reboot",
            f"count(node_reboot_required{{{j}}} == 1) or vector(0)",
            thresholds=[(1, "orange")],
        ),
        stat(
            lay,
            "Security updates pending",
            f"sum(apt_upgrades_pending{{{j},{SECURITY}}}) or vector(0)",
            thresholds=[(1, "orange")],
        ),
        table(
            lay,
            "Hosts",
            [
                ("up", f"max by (instance) (up{{{j}}})", "short", {"0": "down", "1": "up"}),
                ("last write ago", "max by (instance) (time() - dcmon_client_last_seen_timestamp_seconds)", "s", None),
                ("CPU busy", f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{j},mode="idle"}}[5m]))', "percentunit", None),
                ("memory used", f"max by (instance) (1 - node_memory_MemAvailable_bytes{{{j}}} / node_memory_MemTotal_bytes{{{j}}})", "percentunit", None),
                ("hottest GPU", f"max by (instance) (nvidia_smi_temperature_gpu{{{j}}})", "celsius", None),
                ("hottest BMC sensor", f"max by (instance) (ipmi_temperature_celsius{{{j}}})", "celsius", None),
                (
                    "BMC sensors not nominal",
                    f'count by (instance) ({{__name__=~"ipmi_(temperature|fan_speed|voltage|current|power|sensor)_state",{j}}} > 0)',
                    "short",
                    None,
                ),
                ("fan mode", f"max by (instance) (dcmon_fan_mode{{{j}}})", "short", FAN_MODES),
                ("manual fan duty", f"max by (instance) (dcmon_fan_manual_override{{{j}}})", "short", {"0": "no", "1": "yes"}),
                ("worst NVMe wear", f"max by (instance) (nvme_percentage_used_ratio{{{j}}})", "percentunit", None),
                ("updates", f"sum by (instance) (apt_upgrades_pending{{{j}}})", "short", None),
                ("security updates", f"sum by (instance) (apt_upgrades_pending{{{j},{SECURITY}}})", "short", None),
                ("reboot required", f"max by (instance) (node_reboot_required{{{j}}})", "short", {"0": "no", "1": "yes"}),
            ],
            h=12,
            desc="One row per host; every column is aggregated by instance so the rows merge.",
        ),
        timeseries(lay, "Hottest GPU per host", [(f"max by (instance) (nvidia_smi_temperature_gpu{{{j}}})", "{{instance}}")], "celsius"),
        timeseries(lay, "Hottest BMC temperature per host", [(f"max by (instance) (ipmi_temperature_celsius{{{j}}})", "{{instance}}")], "celsius"),
        timeseries(
            lay,
            "CPU busy per host",
            [(f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{j},mode="idle"}}[$__rate_interval]))', "{{instance}}")],
            "percentunit",
            maxv=1,
        ),
        timeseries(lay, "GPU utilisation per host", [(f"avg by (instance) (nvidia_smi_utilization_gpu_ratio{{{j}}})", "{{instance}}")], "percentunit", maxv=1),
        timeseries(lay, "GPU power per host", [(f"sum by (instance) (nvidia_smi_power_draw_watts{{{j}}})", "{{instance}}")], "watt"),
        timeseries(lay, "System power (DCMI) per host", [(f"ipmi_dcmi_power_consumption_current_watts{{{j}}}", "{{instance}}")], "watt"),
    ]
    return dashboard(
        "dcmon-fleet",
        "dcmon / Fleet overview",
        p,
        [JOB],
        "Every host at a glance: up, temperatures, fan mode, pending updates.",
    )


def host():
    lay = Layout()
    i = 'instance="$instance"'
    gpu_join = f"* on (instance, uuid) group_left (index) nvidia_smi_gpu_info{{{i}}}"
    p = [
        lay.row("System"),
        stat(lay, "Uptime", f"time() - node_boot_time_seconds{{{i}}}", unit="s"),
        stat(lay, "CPUs", f'count(node_cpu_seconds_total{{{i},mode="idle"}})'),
        stat(lay, "Memory", f"node_memory_MemTotal_bytes{{{i}}}", unit="bytes"),
        stat(lay, "Load (1m)", f"node_load1{{{i}}}"),
        stat(lay, "Fan mode", f"dcmon_fan_mode{{{i}}}", mappings=value_map(FAN_MODES)),
        stat(lay, "Reboot required", f"node_reboot_required{{{i}}}", mappings=value_map({"0": "no", "1": "yes"}), thresholds=[(1, "orange")]),
        timeseries(
            lay,
            "CPU by mode",
            [
                (
                    f'sum by (mode) (rate(node_cpu_seconds_total{{{i},mode!="idle"}}[$__rate_interval])) / scalar(count(node_cpu_seconds_total{{{i},mode="idle"}}))',
                    "{{mode}}",
                )
            ],
            "percentunit",
            stack=True,
        ),
        timeseries(lay, "Load", [(f"node_load1{{{i}}}", "1m"), (f"node_load5{{{i}}}", "5m"), (f"node_load15{{{i}}}", "15m")]),
        timeseries(
            lay,
            "Memory",
            [
                (f"node_memory_MemTotal_bytes{{{i}}} - node_memory_MemAvailable_bytes{{{i}}}", "used"),
                (f"node_memory_Cached_bytes{{{i}}} + node_memory_Buffers_bytes{{{i}}}", "cache and buffers"),
                (f"node_memory_MemFree_bytes{{{i}}}", "free"),
            ],
            "bytes",
            stack=True,
        ),
        timeseries(
            lay,
            "Pressure stall (some)",
            [
                (f"rate(node_pressure_cpu_waiting_seconds_total{{{i}}}[$__rate_interval])", "cpu"),
                (f"rate(node_pressure_memory_waiting_seconds_total{{{i}}}[$__rate_interval])", "memory"),
                (f"rate(node_pressure_io_waiting_seconds_total{{{i}}}[$__rate_interval])", "io"),
            ],
            "percentunit",
        ),
        lay.row("Disks"),
        timeseries(
            lay,
            "File system use",
            [
                (
                    f'1 - node_filesystem_avail_bytes{{{i},fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"}} / node_filesystem_size_bytes{{{i},fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"}}',
                    "{{mountpoint}}",
                )
            ],
            "percentunit",
            maxv=1,
        ),
        timeseries(
            lay,
            "Disk throughput",
            [
                (f"rate(node_disk_read_bytes_total{{{i}}}[$__rate_interval])", "{{device}} read"),
                (f"-rate(node_disk_written_bytes_total{{{i}}}[$__rate_interval])", "{{device}} written"),
            ],
            "Bps",
        ),
        timeseries(lay, "Disk busy", [(f"rate(node_disk_io_time_seconds_total{{{i}}}[$__rate_interval])", "{{device}}")], "percentunit"),
        timeseries(
            lay,
            "Disk IOPS",
            [
                (f"rate(node_disk_reads_completed_total{{{i}}}[$__rate_interval])", "{{device}} reads"),
                (f"rate(node_disk_writes_completed_total{{{i}}}[$__rate_interval])", "{{device}} writes"),
            ],
            "iops",
        ),
        lay.row("Network"),
        timeseries(
            lay,
            "Network traffic",
            [
                (f'rate(node_network_receive_bytes_total{{{i},device!="lo"}}[$__rate_interval]) * 8', "{{device}} in"),
                (f'-rate(node_network_transmit_bytes_total{{{i},device!="lo"}}[$__rate_interval]) * 8', "{{device}} out"),
            ],
            "bps",
        ),
        timeseries(
            lay,
            "Network errors and drops",
            [
                (f"rate(node_network_receive_errs_total{{{i}}}[$__rate_interval])", "{{device}} rx errors"),
                (f"rate(node_network_transmit_errs_total{{{i}}}[$__rate_interval])", "{{device}} tx errors"),
                (f"rate(node_network_receive_drop_total{{{i}}}[$__rate_interval])", "{{device}} rx drops"),
            ],
            "pps",
        ),
        lay.row("GPUs"),
        table(
            lay,
            "GPUs",
            [("info", f"nvidia_smi_gpu_info{{{i}}}", "short", None)],
            h=6,
            join="index",
            hide=("instance", "info", "serial"),
        ),
        timeseries(lay, "GPU temperature", [(f"nvidia_smi_temperature_gpu{{{i}}} {gpu_join}", "GPU {{index}}")], "celsius"),
        timeseries(lay, "GPU utilisation", [(f"nvidia_smi_utilization_gpu_ratio{{{i}}} {gpu_join}", "GPU {{index}}")], "percentunit", maxv=1),
        timeseries(
            lay,
            "GPU power",
            [
                (f"nvidia_smi_power_draw_watts{{{i}}} {gpu_join}", "GPU {{index}}"),
                (f"sum(nvidia_smi_enforced_power_limit_watts{{{i}}})", "limit (all GPUs)"),
            ],
            "watt",
        ),
        timeseries(
            lay,
            "GPU memory used",
            [(f"nvidia_smi_memory_used_bytes{{{i}}} / nvidia_smi_memory_total_bytes{{{i}}} {gpu_join}", "GPU {{index}}")],
            "percentunit",
            maxv=1,
        ),
        timeseries(lay, "SM clock", [(f"nvidia_smi_clocks_current_sm_clock_hz{{{i}}} {gpu_join}", "GPU {{index}}")], "hertz"),
        timeseries(
            lay,
            "Clock event reasons active",
            [
                (
                    f'label_replace({{__name__=~"nvidia_smi_clocks_event_reasons_.+",{i}}} == 1, "reason", "$1", "__name__", "nvidia_smi_clocks_event_reasons_(.+)")',
                    "{{uuid}} {{reason}}",
                )
            ],
            "short",
        ),
        lay.row("BMC (IPMI)"),
        timeseries(lay, "BMC temperatures", [(f"ipmi_temperature_celsius{{{i}}}", "{{name}}")], "celsius"),
        timeseries(lay, "Fans", [(f"ipmi_fan_speed_rpm{{{i}}}", "{{name}}")], "rotrpm"),
        timeseries(lay, "System power", [(f"ipmi_dcmi_power_consumption_current_watts{{{i}}}", "DCMI"), (f"ipmi_power_watts{{{i}}}", "{{name}}")], "watt"),
        timeseries(lay, "Voltages", [(f"ipmi_voltage_volts{{{i}}}", "{{name}}")], "volt"),
        table(
            lay,
            "Sensors not nominal",
            [
                (
                    "state",
                    f'{{__name__=~"ipmi_(temperature|fan_speed|voltage|current|power|sensor)_state",{i}}} > 0',
                    "short",
                    {"1": "warning", "2": "critical"},
                )
            ],
            h=6,
            join="name",
            hide=("instance",),
        ),
        lay.row("NVMe"),
        timeseries(lay, "NVMe temperature", [(f"nvme_temperature_celsius{{{i}}}", "{{device}}")], "celsius"),
        timeseries(lay, "NVMe endurance used", [(f"nvme_percentage_used_ratio{{{i}}}", "{{device}}")], "percentunit", maxv=1),
        timeseries(lay, "NVMe writes", [(f"rate(nvme_data_units_written_total{{{i}}}[$__rate_interval]) * 512000", "{{device}}")], "Bps"),
        timeseries(lay, "NVMe available spare", [(f"nvme_available_spare_ratio{{{i}}}", "{{device}}")], "percentunit", maxv=1),
        lay.row("Packages"),
        stat(lay, "Upgrades pending", f"sum(apt_upgrades_pending{{{i}}}) or vector(0)"),
        stat(lay, "Security upgrades", f"sum(apt_upgrades_pending{{{i},{SECURITY}}}) or vector(0)", thresholds=[(1, "orange")]),
        stat(lay, "Held back", f"sum(apt_upgrades_held{{{i}}}) or vector(0)"),
        stat(lay, "Autoremovable", f"apt_autoremove_pending{{{i}}}"),
        stat(lay, "Package lists age", f"time() - apt_package_cache_timestamp_seconds{{{i}}}", unit="s", thresholds=[(3 * 86400, "orange")]),
        stat(lay, "Obsolete packages", f"apt_packages_obsolete{{{i}}}"),
        lay.row("Exporter"),
        table(
            lay,
            "Collectors",
            [
                ("success", f"node_scrape_collector_success{{{i}}}", "short", {"0": "failing", "1": "ok"}),
                ("duration", f"node_scrape_collector_duration_seconds{{{i}}}", "s", None),
            ],
            w=12,
            h=10,
            join="collector",
            hide=("instance",),
        ),
        timeseries(
            lay,
            "Remote write",
            [(f"sum by (result) (rate(dcmon_remote_write_samples_total{{{i}}}[$__rate_interval]))", "{{result}}")],
            "short",
            h=10,
        ),
    ]
    return dashboard(
        "dcmon-host",
        "dcmon / Host",
        p,
        [JOB, instance_var(False)],
        "One host: CPU, memory, disks, network, GPUs, BMC sensors, NVMe, packages.",
    )


def gpus():
    lay = Layout()
    i = 'instance=~"$instance"'
    join = "* on (instance, uuid) group_left (index) nvidia_smi_gpu_info"
    legend = "{{instance}} GPU {{index}}"
    p = [
        lay.row("Health"),
        stat(
            lay,
            "GPUs missing from NVML",
            f"sum(dcmon_gpu_pci_devices{{{i}}} - dcmon_gpu_nvml_devices{{{i}}})",
            thresholds=[(1, "red")],
            desc="NVIDIA GPUs on the PCI bus that NVML does not enumerate: fallen off the bus, or no driver (dcmon_gpu_present == 0 names them).",
        ),
        stat(
            lay,
            "Hosts with NVML hung",
            f"count(dcmon_gpu_nvml_responsive{{{i}}} == 0) or vector(0)",
            thresholds=[(1, "red")],
            desc="Hosts where an NVML call has not returned within --collector.gpu.nvml-deadline.",
        ),
        stat(
            lay,
            "Unhealthy GPUs",
            f"count(dcmon_gpu_health{{{i}}} == 0) or vector(0)",
            thresholds=[(1, "orange")],
            desc="GPUs whose verdict is not ok (README: GPU health).",
        ),
        stat(
            lay,
            "PCIe links below maximum",
            f"count(nvidia_smi_pcie_link_gen_current{{{i}}} < nvidia_smi_pcie_link_gen_max{{{i}}} or nvidia_smi_pcie_link_width_current{{{i}}} < nvidia_smi_pcie_link_width_max{{{i}}}) or vector(0)",
            desc="Idle links step down on purpose; a busy GPU's link below its maximum is the link_degraded verdict.",
        ),
        timeseries(
            lay,
            "Verdicts",
            [(f"count by (reason) (dcmon_gpu_health{{{i}}})", "{{reason}}")],
            "short",
            w=8,
            stack=True,
        ),
        table(
            lay,
            "GPU health",
            [
                ("healthy", f"dcmon_gpu_health{{{i}}}", "short", {"0": "no", "1": "yes"}),
            ],
            h=8,
            join="instance",
            desc="One row per GPU and PCI address: the verdict's reason is the first of lost, unresponsive, ecc_uncorrectable, remap_pending, xid_hardware, link_degraded, thermal_idle.",
        ),
        lay.row("GPUs"),
        stat(lay, "GPUs", f"count(nvidia_smi_gpu_info{{{i}}}) or vector(0)"),
        stat(lay, "Busy GPUs (>50 %)", f"count(nvidia_smi_utilization_gpu_ratio{{{i}}} > 0.5) or vector(0)"),
        stat(lay, "Hottest GPU", f"max(nvidia_smi_temperature_gpu{{{i}}})", unit="celsius", thresholds=[(80, "orange"), (88, "red")]),
        stat(lay, "GPU power", f"sum(nvidia_smi_power_draw_watts{{{i}}})", unit="watt"),
        stat(lay, "GPUs with XIDs (1 h)", f"count(count by (instance, uuid) (time() - nvidia_smi_xid_last_timestamp_seconds{{{i}}} < 3600)) or vector(0)", thresholds=[(1, "red")]),
        stat(
            lay,
            "Uncorrectable ECC (GPUs)",
            f"count(nvidia_smi_ecc_errors_uncorrected_volatile_total{{{i}}} > 0) or vector(0)",
            thresholds=[(1, "red")],
        ),
        table(
            lay,
            "Inventory",
            [
                ("info", f"nvidia_smi_gpu_info{{{i}}}", "short", None),
                ("temperature", f"nvidia_smi_temperature_gpu{{{i}}}", "celsius", None),
                ("utilisation", f"nvidia_smi_utilization_gpu_ratio{{{i}}}", "percentunit", None),
                ("power", f"nvidia_smi_power_draw_watts{{{i}}}", "watt", None),
                ("uncorrectable ECC", f"nvidia_smi_ecc_errors_uncorrected_volatile_total{{{i}}}", "short", None),
                ("remapped rows pending", f"nvidia_smi_remapped_rows_pending{{{i}}}", "short", None),
                ("remap failure", f"nvidia_smi_remapped_rows_failure{{{i}}}", "short", {"0": "no", "1": "yes"}),
                ("PCIe gen", f"nvidia_smi_pcie_link_gen_current{{{i}}}", "short", None),
                ("PCIe gen max", f"nvidia_smi_pcie_link_gen_max{{{i}}}", "short", None),
                ("PCIe width", f"nvidia_smi_pcie_link_width_current{{{i}}}", "short", None),
                ("PCIe width max", f"nvidia_smi_pcie_link_width_max{{{i}}}", "short", None),
            ],
            h=10,
            join="instance",
            hide=("info", "vbios_version", "compute_cap"),
        ),
        timeseries(lay, "Temperature", [(f"nvidia_smi_temperature_gpu{{{i}}} {join}", legend)], "celsius"),
        timeseries(lay, "Memory temperature", [(f"nvidia_smi_temperature_memory{{{i}}} {join}", legend)], "celsius"),
        timeseries(lay, "Utilisation", [(f"nvidia_smi_utilization_gpu_ratio{{{i}}} {join}", legend)], "percentunit", maxv=1),
        timeseries(
            lay,
            "Memory used",
            [(f"nvidia_smi_memory_used_bytes{{{i}}} / nvidia_smi_memory_total_bytes{{{i}}} {join}", legend)],
            "percentunit",
            maxv=1,
        ),
        timeseries(lay, "Power", [(f"nvidia_smi_power_draw_watts{{{i}}} {join}", legend)], "watt"),
        timeseries(
            lay,
            "Power against the enforced limit",
            [(f"nvidia_smi_power_draw_watts{{{i}}} / nvidia_smi_enforced_power_limit_watts{{{i}}} {join}", legend)],
            "percentunit",
        ),
        timeseries(
            lay,
            "Energy per hour",
            [(f"increase(nvidia_smi_energy_joules_total{{{i}}}[1h]) / 3600000 {join}", legend)],
            "kwatth",
        ),
        timeseries(
            lay,
            "SM clock against its maximum",
            [(f"nvidia_smi_clocks_current_sm_clock_hz{{{i}}} / nvidia_smi_clocks_max_sm_clock_hz{{{i}}} {join}", legend)],
            "percentunit",
        ),
        timeseries(
            lay,
            "PCIe throughput",
            [
                (f"nvidia_smi_pcie_throughput_rx_bytes_per_second{{{i}}} {join}", legend + " rx"),
                (f"-nvidia_smi_pcie_throughput_tx_bytes_per_second{{{i}}} {join}", legend + " tx"),
            ],
            "Bps",
        ),
        timeseries(
            lay,
            "Throttling (thermal, hardware, power brake, power cap)",
            [
                (
                    f'label_replace({{__name__=~"nvidia_smi_clocks_event_reasons_(hw_slowdown|hw_thermal_slowdown|sw_thermal_slowdown|hw_power_brake_slowdown|sw_power_cap)",{i}}} == 1, "reason", "$1", "__name__", "nvidia_smi_clocks_event_reasons_(.+)")',
                    "{{instance}} {{uuid}} {{reason}}",
                )
            ],
            "short",
        ),
        timeseries(
            lay,
            "XID errors",
            [(f"increase(nvidia_smi_xid_errors_total{{{i}}}[$__rate_interval])", "{{instance}} {{uuid}} XID {{xid}}")],
            "short",
        ),
        timeseries(
            lay,
            "Corrected ECC errors",
            [(f"increase(nvidia_smi_ecc_errors_corrected_volatile_total{{{i}}}[$__rate_interval])", "{{instance}} {{uuid}}")],
            "short",
        ),
        table(
            lay,
            "Processes",
            [("memory", f"nvidia_smi_compute_app_used_memory_bytes{{{i}}}", "bytes", None)],
            h=8,
            join="instance",
        ),
    ]
    return dashboard(
        "dcmon-gpu-fleet",
        "dcmon / GPU fleet",
        p,
        [JOB, instance_var(True)],
        "Every GPU of the selected hosts: temperatures, load, power, clocks, errors.",
    )


def fans():
    lay = Layout()
    i = 'instance=~"$instance"'
    p = [
        table(
            lay,
            "Fan control",
            [
                ("mode", f"dcmon_fan_mode{{{i}}}", "short", FAN_MODES),
                ("manual duty", f"dcmon_fan_manual_override{{{i}}}", "short", {"0": "no", "1": "yes"}),
                ("fans near lower critical", f"dcmon_fan_near_lower_critical{{{i}}}", "short", None),
                ("thermal guard trips (24 h)", f"increase(dcmon_fan_thermal_guard_trips_total{{{i}}}[1d])", "short", None),
                ("mode re-asserted (24 h)", f"increase(dcmon_fan_mode_reasserts_total{{{i}}}[1d])", "short", None),
            ],
            h=8,
        ),
        timeseries(lay, "Zone duty", [(f"dcmon_fan_zone_duty_ratio{{{i}}}", "{{instance}} zone {{zone}}")], "percentunit", maxv=1),
        timeseries(lay, "Fan speed", [(f"ipmi_fan_speed_rpm{{{i}}}", "{{instance}} {{name}}")], "rotrpm"),
        timeseries(
            lay,
            "Fan speed against lower critical",
            [
                (
                    f'ipmi_fan_speed_rpm{{{i}}} / on (instance, job, id, name) group_left () max by (instance, job, id, name) (dcmon_ipmi_sensor_threshold{{{i},type="fan",threshold="lcr"}})',
                    "{{instance}} {{name}}",
                )
            ],
            "short",
            desc="1 = at the BMC's lower-critical threshold; the BMC ramps every fan when one falls below it.",
        ),
        timeseries(
            lay,
            "Headroom to upper critical (BMC temperatures)",
            [
                (
                    f'min by (instance) (dcmon_ipmi_sensor_threshold{{{i},type="temperature",threshold="ucr"}} - on (instance, job, id, name) group_left () ipmi_temperature_celsius{{{i}}})',
                    "{{instance}}",
                )
            ],
            "celsius",
            desc="Smallest distance of any BMC temperature to its upper-critical threshold; the thermal guard acts at 0.",
        ),
        timeseries(lay, "BMC temperatures", [(f"ipmi_temperature_celsius{{{i}}}", "{{instance}} {{name}}")], "celsius"),
        timeseries(lay, "GPU temperatures", [(f"nvidia_smi_temperature_gpu{{{i}}}", "{{instance}} {{uuid}}")], "celsius"),
        timeseries(lay, "Hardware monitor temperatures", [(f"node_hwmon_temp_celsius{{{i}}}", "{{instance}} {{chip}} {{sensor}}")], "celsius"),
        timeseries(lay, "NVMe temperatures", [(f"nvme_temperature_celsius{{{i}}}", "{{instance}} {{device}}")], "celsius"),
        timeseries(lay, "System power (DCMI)", [(f"ipmi_dcmi_power_consumption_current_watts{{{i}}}", "{{instance}}")], "watt"),
        timeseries(lay, "GPU fans", [(f"nvidia_smi_fan_speed_ratio{{{i}}}", "{{instance}} {{uuid}}")], "percentunit", maxv=1),
    ]
    return dashboard(
        "dcmon-fans",
        "dcmon / Fans and thermals",
        p,
        [JOB, instance_var(True)],
        "Fan modes and duty set by dcmon, fan speeds against the BMC's thresholds, temperatures.",
    )


def nvme():
    lay = Layout()
    i = 'instance=~"$instance"'
    p = [
        stat(lay, "Drives", f"count(nvme_device_info{{{i}}}) or vector(0)"),
        stat(lay, "Critical warnings", f"count(nvme_critical_warning{{{i}}} > 0) or vector(0)", thresholds=[(1, "red")]),
        stat(lay, "Most worn drive", f"max(nvme_percentage_used_ratio{{{i}}})", unit="percentunit", thresholds=[(0.8, "orange"), (0.9, "red")]),
        stat(lay, "Lowest spare", f"min(nvme_available_spare_ratio{{{i}}})", unit="percentunit"),
        stat(lay, "Media errors", f"sum(nvme_media_errors_total{{{i}}})", thresholds=[(1, "orange")]),
        stat(lay, "Hottest drive", f"max(nvme_temperature_celsius{{{i}}})", unit="celsius", thresholds=[(70, "orange")]),
        table(
            lay,
            "Drives",
            [
                ("info", f"nvme_device_info{{{i}}}", "short", None),
                ("critical warning", f"nvme_critical_warning{{{i}}}", "short", None),
                ("spare", f"nvme_available_spare_ratio{{{i}}}", "percentunit", None),
                ("spare threshold", f"nvme_available_spare_threshold_ratio{{{i}}}", "percentunit", None),
                ("endurance used", f"nvme_percentage_used_ratio{{{i}}}", "percentunit", None),
                ("media errors", f"nvme_media_errors_total{{{i}}}", "short", None),
                ("power-on hours", f"nvme_power_on_hours_total{{{i}}}", "short", None),
                ("unsafe shutdowns", f"nvme_unsafe_shutdowns_total{{{i}}}", "short", None),
                ("temperature", f"nvme_temperature_celsius{{{i}}}", "celsius", None),
                ("used", f"nvme_used_bytes{{{i}}} / nvme_physical_size_bytes{{{i}}}", "percentunit", None),
            ],
            h=10,
            hide=("info",),
        ),
        timeseries(lay, "Temperature", [(f"nvme_temperature_celsius{{{i}}}", "{{instance}} {{device}}")], "celsius"),
        timeseries(lay, "Endurance used", [(f"nvme_percentage_used_ratio{{{i}}}", "{{instance}} {{device}}")], "percentunit", maxv=1),
        timeseries(lay, "Available spare", [(f"nvme_available_spare_ratio{{{i}}}", "{{instance}} {{device}}")], "percentunit", maxv=1),
        timeseries(
            lay,
            "Throughput",
            [
                (f"rate(nvme_data_units_read_total{{{i}}}[$__rate_interval]) * 512000", "{{instance}} {{device}} read"),
                (f"-rate(nvme_data_units_written_total{{{i}}}[$__rate_interval]) * 512000", "{{instance}} {{device}} written"),
            ],
            "Bps",
        ),
        timeseries(
            lay,
            "Commands",
            [
                (f"rate(nvme_host_read_commands_total{{{i}}}[$__rate_interval])", "{{instance}} {{device}} reads"),
                (f"rate(nvme_host_write_commands_total{{{i}}}[$__rate_interval])", "{{instance}} {{device}} writes"),
            ],
            "iops",
        ),
        timeseries(
            lay,
            "Errors",
            [
                (f"increase(nvme_media_errors_total{{{i}}}[$__rate_interval])", "{{instance}} {{device}} media"),
                (f"increase(nvme_num_err_log_entries_total{{{i}}}[$__rate_interval])", "{{instance}} {{device}} error log"),
            ],
            "short",
        ),
        timeseries(lay, "Controller busy", [(f"rate(nvme_controller_busy_time_seconds{{{i}}}[$__rate_interval])", "{{instance}} {{device}}")], "percentunit"),
    ]
    return dashboard(
        "dcmon-nvme",
        "dcmon / NVMe health",
        p,
        [JOB, instance_var(True)],
        "SMART health of every NVMe drive: warnings, wear, spare, errors, temperature.",
    )


def internals():
    lay = Layout()
    r = 'job=~"$receiver_job"'
    j = 'job=~"$job"'
    p = [
        lay.row("Receiver"),
        stat(lay, "Series", f"sum(dcmon_receiver_series{{{r}}})"),
        stat(lay, "Samples", f"sum(dcmon_receiver_samples{{{r}}})"),
        stat(lay, "Database", f"sum(dcmon_receiver_db_bytes{{{r}}})", unit="bytes"),
        stat(lay, "Hosts up", f"count(up{{{j}}} == 1) or vector(0)"),
        stat(lay, "Hosts silent > 5 min", f"count(time() - dcmon_client_last_seen_timestamp_seconds > 300) or vector(0)", thresholds=[(1, "red")]),
        stat(lay, "Rejected requests (1 h)", f"sum(increase(dcmon_receiver_rejected_requests_total{{{r}}}[1h])) or vector(0)", thresholds=[(1, "orange")]),
        timeseries(
            lay,
            "Ingest",
            [
                (f"sum(rate(dcmon_receiver_ingested_samples_total{{{r}}}[$__rate_interval]))", "samples/s"),
                (f"sum(rate(dcmon_receiver_write_requests_total{{{r}}}[$__rate_interval]))", "requests/s"),
            ],
            "short",
        ),
        timeseries(
            lay,
            "Rejected requests by reason",
            [(f"sum by (reason) (rate(dcmon_receiver_rejected_requests_total{{{r}}}[$__rate_interval]))", "{{reason}}")],
            "reqps",
        ),
        timeseries(
            lay,
            "Request latency (p99)",
            [
                (
                    f"histogram_quantile(0.99, sum by (le, handler) (rate(dcmon_receiver_request_duration_seconds_bucket{{{r}}}[$__rate_interval])))",
                    "{{handler}}",
                )
            ],
            "s",
        ),
        timeseries(
            lay,
            "Requests by route",
            [(f"sum by (handler) (rate(dcmon_receiver_request_duration_seconds_count{{{r}}}[$__rate_interval]))", "{{handler}}")],
            "reqps",
        ),
        timeseries(
            lay,
            "Storage",
            [(f"dcmon_receiver_db_bytes{{{r}}}", "database"), (f"dcmon_receiver_series{{{r}}}", "series")],
            "short",
        ),
        timeseries(
            lay,
            "Compaction and retention",
            [
                (f"increase(dcmon_receiver_compactions_total{{{r}}}[$__rate_interval])", "compactions"),
                (f"increase(dcmon_receiver_retention_runs_total{{{r}}}[$__rate_interval])", "retention runs"),
            ],
            "short",
        ),
        lay.row("Exporters"),
        timeseries(
            lay,
            "Samples shipped",
            [(f"sum by (result) (rate(dcmon_remote_write_samples_total{{{j}}}[$__rate_interval]))", "{{result}}")],
            "short",
        ),
        timeseries(lay, "Spool", [(f"dcmon_remote_write_spool_bytes{{{j}}}", "{{instance}} {{endpoint}}")], "bytes"),
        timeseries(
            lay,
            "Time since last successful write",
            [(f"time() - dcmon_remote_write_last_success_timestamp_seconds{{{j}}}", "{{instance}} {{endpoint}}")],
            "s",
        ),
        timeseries(lay, "Time since the receiver heard from each host", [("time() - dcmon_client_last_seen_timestamp_seconds", "{{instance}}")], "s"),
        timeseries(
            lay,
            "Failing collectors",
            [(f"count by (collector) (node_scrape_collector_success{{{j}}} == 0)", "{{collector}}")],
            "short",
        ),
        timeseries(
            lay,
            "Slowest collectors",
            [(f"topk(5, max by (collector) (node_scrape_collector_duration_seconds{{{j}}}))", "{{collector}}")],
            "s",
        ),
        table(
            lay,
            "Exporter versions",
            [("hosts", f"count by (version, revision) (dcmon_exporter_build_info{{{j}}})", "short", None)],
            h=6,
            join="version",
        ),
    ]
    return dashboard(
        "dcmon-internals",
        "dcmon / Internals",
        p,
        [JOB, variable("receiver_job", "receiver job", "label_values(dcmon_receiver_series, job)", multi=True, include_all=True)],
        "The receiver's own metrics (which it stores under job dcmon-receiver) and the exporters' shipping.",
    )


def main(out=OUT):
    for name, board in [
        ("fleet-overview", fleet()),
        ("host", host()),
        ("gpu-fleet", gpus()),
        ("fans-thermals", fans()),
        ("nvme-health", nvme()),
        ("internals", internals()),
    ]:
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(board, f, indent=2, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit("usage: dashboards.py [OUTPUT_DIR]")
    main(*sys.argv[1:])
