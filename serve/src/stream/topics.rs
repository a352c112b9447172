//! Creating the topics the scorer uses, when asked to (admin API).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use super::{StreamError, TopicSpec};

/// Creates each of `topics` that does not exist.
pub async fn create_missing(
    config: &ClientConfig,
    topics: &[&str],
    spec: TopicSpec,
) -> Result<(), StreamError> {
    let TopicSpec {
        partitions,
        replication,
    } = spec;
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut names: Vec<&str> = topics.to_vec();
    names.sort_unstable();
    names.dedup();
    let new: Vec<NewTopic> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await? {
        match result {
            Ok(topic) => tracing::info!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(StreamError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
