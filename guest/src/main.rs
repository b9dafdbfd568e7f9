//! `hvprof-guest`: the in-guest helper binary. See `docs/active.md` and `hvprof-guest --help`.

use hvprof_guest::helper;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", helper::USAGE);
        return;
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        println!("hvprof-guest {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let opts = match helper::parse_args(&args) {
        Ok(mut o) => {
            // The guest image's init names the port in HVPROF_PORT.
            if o.channel == hvprof_proto::transport::Channel::Port(None) {
                if let Some(p) = std::env::var_os("HVPROF_PORT").filter(|p| !p.is_empty()) {
                    o.channel = hvprof_proto::transport::Channel::Port(Some(p.into()));
                }
            }
            o
        }
        Err(e) => {
            eprintln!("hvprof-guest: {e}\n\n{}", helper::USAGE);
            std::process::exit(2);
        }
    };
    match helper::run(&opts) {
        Ok(why) => {
            if opts.verbose {
                eprintln!("hvprof-guest: stopped: {why}");
            }
        }
        Err(e) => {
            eprintln!("hvprof-guest: {}", hvprof_rt::error_chain(&e));
            std::process::exit(1);
        }
    }
}
