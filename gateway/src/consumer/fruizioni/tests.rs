use super::*;

#[test]
fn only_well_formed_names_are_recorded() {
    assert_eq!(recordable_name("inps-isee").as_deref(), Some("inps-isee"));
    for bad in ["", "Inps", "a b", "x\u{7}", &"a".repeat(65)] {
        assert_eq!(recordable_name(bad), None, "{bad}");
    }
}

#[test]
fn own_public_address_follows_the_bound_port() {
    let configured: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let bound: SocketAddr = "127.0.0.1:43210".parse().unwrap();
    assert_eq!(
        effective_base("http://127.0.0.1:0/anagrafe/v1/", configured, Some(bound)),
        "http://127.0.0.1:43210/anagrafe/v1"
    );
    assert_eq!(
        effective_base("https://api.example.gov.it/v1", configured, Some(bound)),
        "https://api.example.gov.it/v1"
    );
    assert_eq!(
        effective_base(
            "http://127.0.0.1:8080/x",
            "127.0.0.1:8080".parse().unwrap(),
            None
        ),
        "http://127.0.0.1:8080/x"
    );
}
