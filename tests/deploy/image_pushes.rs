//! Every image build and push the documents under deploy/ and the README show: registry login
//! before the push, and the target platform Cloud Run runs.

use crate::common::{
    assert_no_problems, check, files_under_deploy, read_repo_file, read_yaml, shell_commands,
};

const PUSHES: &[&str] = &[
    "docker push",
    "crane push",
    "oras cp",
    "oras push",
    "skopeo copy",
];

/// What is wrong with the image pushes and builds of one document; and how many pushes it has.
fn push_problems(name: &str, text: &str) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut logged_in = false;
    let mut pushes = 0;
    let mut unplatformed = Vec::new();
    for cmd in shell_commands(name, text) {
        if cmd.contains("gcloud auth configure-docker") {
            let host = cmd
                .split_whitespace()
                .skip_while(|w| *w != "configure-docker")
                .nth(1)
                .unwrap_or_default()
                .trim_matches('"');
            check(&mut problems, host.ends_with("-docker.pkg.dev"), || {
                format!(
                    "{name}: `{cmd}` must name the Artifact Registry host <region>-docker.pkg.dev"
                )
            });
            logged_in = true;
        }
        if PUSHES.iter().any(|p| cmd.contains(p)) {
            pushes += 1;
            check(&mut problems, logged_in, || {
                format!("{name}: `{cmd}` pushes before `gcloud auth configure-docker <region>-docker.pkg.dev`")
            });
        }
        if (cmd.contains("docker build") || cmd.contains("docker buildx build"))
            && !cmd.contains("--platform linux/amd64")
        {
            unplatformed.push(format!(
                "{name}: `{cmd}` must build for --platform linux/amd64 (Cloud Run's)"
            ));
        }
    }
    // Local-only images (compose) may stay native; an image that is pushed, or built for Cloud
    // Run, must be amd64.
    if pushes > 0 || name.starts_with("deploy/cloud-run/") {
        problems.extend(unplatformed);
    }
    (problems, pushes)
}

#[test]
fn every_image_push_logs_in_first_and_names_the_platform() {
    let mut problems = Vec::new();
    let mut pushes = 0;
    let mut docs = files_under_deploy(&[".md", "Dockerfile"]);
    docs.push("README.md".to_string());
    for f in &docs {
        let (p, n) = push_problems(f, &read_repo_file(f));
        problems.extend(p);
        pushes += n;
    }
    // Cloud Run (proxy and sidecar) pushes with docker; Istio and Service Extensions with crane.
    check(&mut problems, pushes >= 4, || {
        format!("found only {pushes} image pushes in {docs:?}: is the scan still reading them?")
    });
    let cloudbuild = read_yaml("deploy/cloud-run/cloudbuild.yaml");
    let args = cloudbuild["steps"][0]["args"].to_string();
    check(
        &mut problems,
        args.contains(r#""--platform","linux/amd64""#),
        || {
            format!(
                "cloudbuild.yaml: the docker build must name --platform linux/amd64, args {args}"
            )
        },
    );
    assert_no_problems("image pushes", problems);

    // The scan is not vacuous: a push without a login and a build without a platform are caught.
    let bad = "```sh\ndocker build -f x -t \"$IMAGE\" .\ndocker push \"$IMAGE\"\n```\n";
    let (p, n) = push_problems("bad.md", bad);
    assert_eq!(
        (p.len(), n),
        (2, 1),
        "the scan missed a broken recipe: {p:?}"
    );
}
