fn main() {
    std::process::exit(aetherflow::cli::main());
}
