fn main() {
    eprintln!("haven-load: scenarios arrive with the load-test issue");
}
