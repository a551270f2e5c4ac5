//! `testudoctl events`: follows the daemon's events until interrupted, one line per event
//! (`--json`: one JSON object per line, for scripts reading a stream).

use serde_json::{json, Value};
use testudo_client::events::{event::Payload, Event};
use testudo_client::Client;

use crate::CtlError;

/// Which events to follow.
#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// Only the events of the namespace given with -n (default: every namespace)
    #[arg(long)]
    only_namespace: bool,
    /// Only events whose topic starts with this, e.g. /containers/; repeatable
    #[arg(long = "topic", value_name = "PREFIX")]
    topics: Vec<String>,
}

/// Prints events as they come, until the daemon ends the stream.
pub(crate) async fn follow(
    client: &mut Client,
    namespace: &str,
    args: EventsArgs,
    as_json: bool,
) -> Result<(), CtlError> {
    let namespace = args.only_namespace.then_some(namespace);
    let mut stream = client.subscribe_events(namespace, &args.topics).await?;
    while let Some(event) = stream.next().await? {
        if as_json {
            println!("{}", event_json(&event));
        } else {
            println!("{}", event_line(&event));
        }
    }
    Ok(())
}

fn time(event: &Event) -> String {
    event
        .time
        .and_then(|t| std::time::SystemTime::try_from(t).ok())
        .map(|t| humantime::format_rfc3339_nanos(t).to_string())
        .unwrap_or_default()
}

fn details(payload: Option<&Payload>) -> Value {
    match payload {
        Some(Payload::ContainerChanged(c)) => json!({"name": c.name, "image": c.image}),
        Some(Payload::ContainerStarted(s)) => json!({"pid": s.pid}),
        Some(Payload::ContainerExited(e)) => json!({"exit_code": e.exit_code}),
        Some(Payload::ImageChanged(i)) => json!({"name": i.name, "digest": i.digest}),
        Some(Payload::CellChanged(c)) => json!({"id": c.id, "name": c.name}),
        Some(Payload::NamespaceChanged(_) | Payload::ContainerOom(_)) | None => json!({}),
    }
}

fn event_json(event: &Event) -> Value {
    let mut value = json!({
        "time": time(event),
        "namespace": event.namespace,
        "topic": event.topic,
        "container_id": event.container_id,
    });
    if let (Some(out), Value::Object(more)) =
        (value.as_object_mut(), details(event.payload.as_ref()))
    {
        out.extend(more);
    }
    value
}

/// `<time> <namespace|-> <topic> [<container id>] [key=value ...]`.
fn event_line(event: &Event) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut line = format!(
        "{} {} {}",
        time(event),
        or_dash(&event.namespace),
        event.topic
    );
    if !event.container_id.is_empty() {
        line.push(' ');
        line.push_str(&event.container_id);
    }
    if let Value::Object(fields) = details(event.payload.as_ref()) {
        for (key, value) in fields {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            line.push_str(&format!(" {key}={text}"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use testudo_client::events::ImageChanged;

    use super::*;

    #[test]
    fn an_event_is_one_line_of_text_or_of_json() {
        let event = Event {
            time: Some(std::time::SystemTime::UNIX_EPOCH.into()),
            namespace: String::new(),
            topic: "/images/pull".into(),
            container_id: String::new(),
            payload: Some(Payload::ImageChanged(ImageChanged {
                name: "r/app:v1".into(),
                digest: "sha256:ab".into(),
            })),
        };
        assert_eq!(
            event_line(&event),
            "1970-01-01T00:00:00.000000000Z - /images/pull digest=sha256:ab name=r/app:v1"
        );
        let value = event_json(&event);
        assert_eq!(value["topic"], "/images/pull");
        assert_eq!(value["name"], "r/app:v1");
        assert_eq!(value["namespace"], "");
    }
}
