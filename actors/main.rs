mod io;

fn main() {}
