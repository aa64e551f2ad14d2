//! Thermal simulation of one GPU server's peripheral fan zone: eight GPUs
//! whose heat follows a load trace, cooled by air whose flow follows the
//! zone duty, regulated three ways: BMC full mode (100 % always), BMC
//! optimal mode (follows the CPU, blind to the GPUs), and a dcmon fan
//! policy (the exporter's own `Regulator`, fed NVML-like integer readings
//! every control interval). Prints mean duty, the hottest GPU temperature,
//! minutes any GPU spent above its slowdown threshold, duty changes per
//! hour and, of those, reversals (up then down or down then up) per hour.
//! Not a test: the figures describe the model, not a machine.
//!
//! `cargo bench -p dcmon-exporter --bench fan_policy_sim` (24 simulated
//! hours; `SIM_HOURS=N` for another length). The trace is seeded, so the
//! figures repeat exactly.
//!
//! The model, per GPU: C·dT/dt = P(load) − h(duty)·(T − T_inlet), with
//! P from 70 W idle to 700 W at full load, C = 2 kJ/K and
//! h(d) = 7.6 + 8·d W/K (d in 0..1): full load settles near 70 °C at 100 %
//! duty and near 95 °C at 30 %, past the 87 °C slowdown threshold. GPUs
//! differ by ±6 % in h (slot position). The CPU follows a quarter of the
//! GPU load; the BMC's optimal mode ramps 30 % → 100 % between 50 and
//! 80 °C CPU.

use std::time::{Duration, Instant};

use dcmon_exporter::fans::Policy;
use dcmon_exporter::fans::regulator::{Reading, Regulator};
use dcmon_testkit::Rng;

const INLET_C: f64 = 25.0;
const SLOWDOWN_C: f64 = 87.0;
const GPUS: usize = 8;
const CONTROL_INTERVAL_S: u64 = 5;
const HOST_FLOOR: u8 = 25;

const POLICY: &str = r#"
version = "sim"
[[zone]]
id = 1
floor = 30
deadband_c = 3
hold_s = 30
max_step = 10
[[zone.source]]
type = "gpu"
curve = [[50, 30], [65, 50], [75, 80], [80, 100]]
"#;

/// GPU load (0..1) for each second: idle stretches, full-load training
/// runs, and jittery inference, in turn. Seeded, so every run sees the
/// same trace.
fn load_trace(hours: u64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let total = (hours * 3600) as usize;
    let mut trace = Vec::with_capacity(total);
    while trace.len() < total {
        let phase = rng.unit();
        let minutes = rng.range(20.0, 90.0);
        let seconds = (minutes * 60.0) as usize;
        if phase < 0.25 {
            trace.extend(std::iter::repeat_n(0.02, seconds));
        } else if phase < 0.6 {
            // Training: full load with brief dips at checkpoints.
            for s in 0..seconds {
                trace.push(if s % 900 < 20 {
                    0.3
                } else {
                    rng.range(0.97, 1.0)
                });
            }
        } else {
            // Inference: a new level every 30 s.
            let mut level = 0.5;
            for s in 0..seconds {
                if s.is_multiple_of(30) {
                    level = rng.range(0.25, 0.75);
                }
                trace.push(level);
            }
        }
    }
    trace.truncate(total);
    trace
}

fn conductance(duty: f64, spread: f64) -> f64 {
    (7.6 + 8.0 * duty / 100.0) * spread
}

enum Mode {
    Full,
    Optimal,
    Policy(Box<Policy>, Regulator),
}

struct Figures {
    mean_duty: f64,
    max_gpu_c: f64,
    minutes_above_slowdown: f64,
    changes_per_hour: f64,
    reversals_per_hour: f64,
}

fn simulate(mut mode: Mode, trace: &[f64]) -> Figures {
    let spreads: Vec<f64> = (0..GPUS)
        .map(|i| 0.94 + 0.12 * i as f64 / (GPUS - 1) as f64)
        .collect();
    let mut gpu = [INLET_C + 10.0; GPUS];
    let mut cpu = INLET_C + 10.0;
    let mut duty: u8 = 100;
    let (mut duty_sum, mut max_gpu, mut hot_seconds, mut changes) = (0.0, 0.0_f64, 0u64, 0u64);
    // Oscillation shows as the duty turning round: up then down, or down then up.
    let (mut last_direction, mut reversals) = (0i8, 0u64);
    let t0 = Instant::now();
    for (second, load) in trace.iter().enumerate() {
        if (second as u64).is_multiple_of(CONTROL_INTERVAL_S) {
            let next = match &mut mode {
                Mode::Full => 100,
                Mode::Optimal => {
                    let ramp = ((cpu - 50.0) / 30.0).clamp(0.0, 1.0);
                    (30.0 + 70.0 * ramp).round() as u8
                }
                Mode::Policy(policy, regulator) => {
                    // NVML reports whole degrees; the hottest GPU counts.
                    let hottest = gpu.iter().copied().fold(f64::MIN, f64::max).round();
                    let now = t0 + Duration::from_secs(second as u64);
                    regulator
                        .step(
                            &policy.doc.zones[0],
                            HOST_FLOOR,
                            &[Reading::Celsius(hottest)],
                            now,
                        )
                        .duty
                }
            };
            if next != duty && second > 0 {
                changes += 1;
                let direction = if next > duty { 1 } else { -1 };
                if last_direction != 0 && direction != last_direction {
                    reversals += 1;
                }
                last_direction = direction;
            }
            duty = next;
        }
        let power = 70.0 + 630.0 * load;
        for (t, spread) in gpu.iter_mut().zip(&spreads) {
            *t += (power - conductance(f64::from(duty), *spread) * (*t - INLET_C)) / 2000.0;
        }
        let cpu_power = 60.0 + 240.0 * (0.1 + 0.25 * load);
        cpu += (cpu_power - (6.0 + 4.0 * f64::from(duty) / 100.0) * (cpu - INLET_C)) / 1500.0;
        let hottest = gpu.iter().copied().fold(f64::MIN, f64::max);
        max_gpu = max_gpu.max(hottest);
        if hottest > SLOWDOWN_C {
            hot_seconds += 1;
        }
        duty_sum += f64::from(duty);
    }
    let hours = trace.len() as f64 / 3600.0;
    Figures {
        mean_duty: duty_sum / trace.len() as f64,
        max_gpu_c: max_gpu,
        minutes_above_slowdown: hot_seconds as f64 / 60.0,
        changes_per_hour: changes as f64 / hours,
        reversals_per_hour: reversals as f64 / hours,
    }
}

fn main() {
    let hours: u64 = std::env::var("SIM_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(24);
    let trace = load_trace(hours, 0x5eed_f00d);
    let mean_load = trace.iter().sum::<f64>() / trace.len() as f64;
    println!(
        "fan policy simulation: {hours} h trace, mean GPU load {:.0} %, {GPUS} GPUs, slowdown at {SLOWDOWN_C} °C, control every {CONTROL_INTERVAL_S} s",
        mean_load * 100.0
    );
    println!(
        "{:<14} {:>10} {:>12} {:>20} {:>16} {:>13}",
        "mode", "mean duty", "max GPU °C", "min above slowdown", "duty changes/h", "reversals/h"
    );
    let policy = Policy::parse(POLICY, HOST_FLOOR).expect("the simulated policy is valid");
    for (name, mode) in [
        ("BMC full", Mode::Full),
        ("BMC optimal", Mode::Optimal),
        (
            "dcmon policy",
            Mode::Policy(Box::new(policy), Regulator::default()),
        ),
    ] {
        let f = simulate(mode, &trace);
        println!(
            "{name:<14} {:>9.1}% {:>12.1} {:>20.1} {:>16.1} {:>13.1}",
            f.mean_duty,
            f.max_gpu_c,
            f.minutes_above_slowdown,
            f.changes_per_hour,
            f.reversals_per_hour
        );
    }
}
