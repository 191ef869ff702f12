//! A cross-check against a directory written by the independent Python generator
//! (`shared/workload/gen.py`), which is not part of this repository: run by hand with
//! `PORTCULLIS_GENPY_WORKLOAD=/tmp/wl-small cargo test -p portcullis-workload -- --ignored`.

use pdp::{NoAttributes, Request, Snapshot, Timestamp};
use workload::Expected;

#[test]
#[ignore = "needs a directory written by gen.py in PORTCULLIS_GENPY_WORKLOAD"]
fn reads_gen_py_output_and_agrees_with_its_answers() {
    let Ok(dir) = std::env::var("PORTCULLIS_GENPY_WORKLOAD") else {
        panic!("set PORTCULLIS_GENPY_WORKLOAD to a directory written by gen.py");
    };
    let workload = workload::read_dir(dir.as_ref(), Timestamp(0), &mut |_| {}).unwrap();
    assert!(!workload.requests.is_empty());
    let snapshot = Snapshot::build(&workload.model);
    let mut wrong = 0;
    for r in &workload.requests {
        let request = Request {
            context: Default::default(),
            user: &r.user,
            agent: &r.agent,
            connector: &r.connector,
            tool: &r.tool,
            attributes: &NoAttributes,
        };
        let got = Expected::from(snapshot.decide(&request));
        if got != r.expected {
            wrong += 1;
            if wrong <= 10 {
                eprintln!("{}: engine {got:?}, gen.py {:?}", r.id, r.expected);
            }
        }
    }
    eprintln!(
        "{} users, {} groups, {} policies, {} requests, {wrong} disagreements",
        workload.model.users.len(),
        workload.model.groups.len(),
        workload.model.policies.len(),
        workload.requests.len()
    );
    assert_eq!(wrong, 0);
}
