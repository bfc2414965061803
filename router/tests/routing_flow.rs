//! End-to-end routing over gRPC on loopback against a standalone node.

use centralino_testkit as common;

use centralino_proto::v1::{
    agent_command, agent_event, conversation_event, AcceptOffer, AgentClose, AgentSend,
    SendMessageRequest, Sender,
};
use common::*;

#[test]
fn a_conversation_is_offered_accepted_relayed_and_closed() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let started = start_conversation(&mut client, "sales", "it", "c1")
            .await
            .unwrap();
        let mut stream = events(&mut client, &started, 0).await;
        client
            .send_message(SendMessageRequest {
                conversation_id: started.conversation_id.clone(),
                token: started.token.clone(),
                message_id: "m1".into(),
                text: "Ciao, dov'è il mio ordine?".into(),
            })
            .await
            .unwrap();
        let offer = giulia
            .next(5, |k| match k {
                agent_event::Kind::Offer(o) => Some(o),
                _ => None,
            })
            .await
            .expect("offer");
        assert_eq!(offer.conversation_id, started.conversation_id);
        giulia
            .send(agent_command::Kind::Accept(AcceptOffer {
                reservation_id: offer.reservation_id,
            }))
            .await;
        let assigned = giulia
            .next(5, |k| match k {
                agent_event::Kind::Assigned(a) => Some(a),
                _ => None,
            })
            .await
            .expect("assigned");
        assert_eq!(
            assigned.transcript.len(),
            1,
            "the customer's first message travels with the assignment"
        );
        let agent = next_event(&mut stream, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Assigned(a)) => Some(a.agent_id.clone()),
            _ => None,
        })
        .await;
        assert_eq!(agent.as_deref(), Some("giulia"));
        giulia
            .send(agent_command::Kind::Send(AgentSend {
                conversation_id: started.conversation_id.clone(),
                message_id: "a1".into(),
                text: "Controllo subito".into(),
                status_note: true,
            }))
            .await;
        let reply = next_event(&mut stream, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Message(m)) if m.sender == Sender::Agent as i32 => {
                Some(m.clone())
            }
            _ => None,
        })
        .await
        .expect("agent message reaches the customer");
        assert_eq!(reply.seq, 2);
        assert!(reply.status_note);
        giulia
            .send(agent_command::Kind::Close(AgentClose {
                conversation_id: started.conversation_id.clone(),
                summary: "order 123 shipped".into(),
            }))
            .await;
        let closed = next_event(&mut stream, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Closed(c)) => Some(c.outcome),
            _ => None,
        })
        .await;
        assert_eq!(
            closed,
            Some(centralino_proto::v1::ConversationOutcome::Completed as i32)
        );
        node.shutdown().await;
    });
}
