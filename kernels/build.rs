//! Tells the code whether the target has the ARM DSP extension (SMLAD and friends):
//! ARMv7E-M (Cortex-M4, M7: `thumbv7em-*`) and ARMv7-A (`armv7-*`, `thumbv7neon-*`). Cargo
//! does not pass ARM's target features (unstable in Rust) to `cfg`, so the target name
//! decides; `CNNKIT_NO_ARM_DSP=1` turns the DSP kernels off (to compare with the portable
//! ones on the same target).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cnnkit_arm_dsp)");
    println!("cargo::rerun-if-env-changed=CNNKIT_NO_ARM_DSP");
    let target = std::env::var("TARGET").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let dsp = arch == "arm"
        && (target.starts_with("thumbv7em")
            || target.starts_with("armv7")
            || target.starts_with("thumbv7neon"));
    if dsp && std::env::var_os("CNNKIT_NO_ARM_DSP").is_none() {
        println!("cargo::rustc-cfg=cnnkit_arm_dsp");
    }
}
