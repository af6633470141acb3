//! `mode = "ask"`: a request no rule decides waits while a person answers.
//!
//! A question is held only while someone can answer it: a watcher on the
//! network process's control socket (an interactive `hutch run`/`exec`
//! terminal, which prompts, or `hutch audit -f` on a terminal, which shows the
//! question for `hutch allow`/`deny` to answer from anywhere). With nobody
//! watching a request is refused at once, as in `mode = "allow"`: a script
//! without a terminal never waits for an answer that cannot come.
//!
//! Requests for the same host and port while a question is open wait for
//! the same answer. A question is answered by [`Asks::answer`] (a prompt,
//! `hutch allow --once`), by a policy change that decides it (`hutch allow`
//! and `hutch deny` add rules; see [`Asks::settle`]), or not at all: after
//! the timeout the request gets the refusal that names the rule to add. At
//! most [`MAX_PENDING`] questions are open at once, so a guest asking for
//! host after host cannot bury the person under prompts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use super::policy::{Policy, Verdict};

/// Questions open at once; more requests for other hosts are refused at once.
pub const MAX_PENDING: usize = 16;

/// Characters of a request's method a question shows.
const MAX_METHOD: usize = 32;

/// One open question, as watchers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Its number, for answers.
    pub id: u64,
    /// The host asked for (normalized: a name or an address, never other text).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `CONNECT`, or the method of a plain-HTTP request.
    pub method: String,
    /// How long it stays open, from when it was asked, in milliseconds.
    pub timeout_ms: u64,
}

/// What a watcher hears.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AskEvent {
    /// A new question.
    Question(Question),
    /// A question is over: answered here or elsewhere, or timed out.
    Settled {
        /// The question.
        id: u64,
        /// How, for people (`allowed once`, `denied by "x" (hutch deny)`).
        outcome: String,
    },
}

/// An answer to a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Allowed for the requests waiting now, no rule added.
    Once {
        /// Who said so (`the prompt of hutch exec (pid 12)`, `hutch allow --once`).
        by: String,
    },
    /// Allowed by a rule (now in the policy).
    Rule {
        /// The rule, as the audit log names it.
        rule: String,
        /// It names the host itself.
        explicit: bool,
    },
    /// Refused.
    Deny {
        /// Why.
        reason: String,
    },
}

impl Answer {
    /// How the question ended, for people.
    pub fn describe(&self) -> String {
        match self {
            Answer::Once { by } => format!("allowed once ({by})"),
            Answer::Rule { rule, .. } => format!("allowed by {rule}"),
            Answer::Deny { reason } => reason.clone(),
        }
    }
}

/// What became of a request that asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Someone answered.
    Answered(Answer),
    /// Nobody answered in time.
    TimedOut(Duration),
    /// Nobody was watching: nobody was asked.
    NoOne,
    /// Too many questions are open already.
    TooMany,
}

struct Pending {
    question: Question,
    waiters: Vec<oneshot::Sender<Answer>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    watchers: usize,
    timeout: Duration,
}

/// The open questions of one VM, and who watches them.
#[derive(Clone)]
pub struct Asks {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<AskEvent>,
}

impl Asks {
    /// No questions yet; each will wait at most `timeout`.
    pub fn new(timeout: Duration) -> Asks {
        let (events, _) = broadcast::channel(64);
        Asks { state: Arc::new(Mutex::new(State { timeout, ..State::default() })), events }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long the next question waits (the policy changed).
    pub fn set_timeout(&self, timeout: Duration) {
        self.lock().timeout = timeout;
    }

    /// Asks about `host:port`; `raised` is called (once, outside any lock)
    /// when this request opened a new question.
    pub async fn ask(&self, host: &str, port: u16, method: &str, raised: impl FnOnce(&Question)) -> Outcome {
        let (rx, question, new) = {
            let mut state = self.lock();
            if state.watchers == 0 {
                return Outcome::NoOne;
            }
            let (tx, rx) = oneshot::channel();
            let open = state.pending.values_mut().find(|p| p.question.host == host && p.question.port == port);
            if let Some(open) = open {
                open.waiters.push(tx);
                (rx, open.question.clone(), false)
            } else {
                if state.pending.len() >= MAX_PENDING {
                    return Outcome::TooMany;
                }
                state.next_id += 1;
                let question = Question {
                    id: state.next_id,
                    host: host.to_owned(),
                    port,
                    // A guest's method is a token, but of any length: a prompt line stays one line.
                    method: method.chars().take(MAX_METHOD).collect(),
                    timeout_ms: u64::try_from(state.timeout.as_millis()).unwrap_or(u64::MAX),
                };
                state.pending.insert(question.id, Pending { question: question.clone(), waiters: vec![tx] });
                (rx, question, true)
            }
        };
        if new {
            raised(&question);
            let _ = self.events.send(AskEvent::Question(question.clone()));
        }
        let timeout = Duration::from_millis(question.timeout_ms);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Outcome::Answered(answer),
            // Timed out (or the question was dropped with its waiters).
            _ => {
                let removed = self.lock().pending.remove(&question.id).is_some();
                if removed {
                    let outcome = format!("no answer within {} s", timeout.as_secs());
                    let _ = self.events.send(AskEvent::Settled { id: question.id, outcome });
                }
                Outcome::TimedOut(timeout)
            }
        }
    }

    /// Answers question `id`; the question, if it was still open.
    pub fn answer(&self, id: u64, answer: &Answer) -> Option<Question> {
        let pending = self.lock().pending.remove(&id)?;
        for waiter in pending.waiters {
            let _ = waiter.send(answer.clone());
        }
        let _ = self.events.send(AskEvent::Settled { id, outcome: answer.describe() });
        Some(pending.question)
    }

    /// Answers every open question `decide` has an answer for; the ones answered.
    pub fn answer_where(&self, decide: impl Fn(&Question) -> Option<Answer>) -> Vec<Question> {
        let decided: Vec<(u64, Answer)> =
            self.lock().pending.values().filter_map(|p| decide(&p.question).map(|a| (p.question.id, a))).collect();
        decided.into_iter().filter_map(|(id, answer)| self.answer(id, &answer)).collect()
    }

    /// Answers the open questions that `policy` now decides (a rule was
    /// added or lifted); the ones answered.
    pub fn settle(&self, policy: &Policy) -> Vec<Question> {
        self.answer_where(|q| match policy.decide(&q.host, q.port) {
            Verdict::Allow { rule, explicit } => Some(Answer::Rule { rule, explicit }),
            Verdict::Deny { reason } => Some(Answer::Deny { reason }),
            Verdict::Ask => None,
        })
    }

    /// Starts watching: questions are held while the returned guard lives.
    /// Also the questions open now, which the new watcher has not heard of.
    pub fn watch(&self) -> (Watching, broadcast::Receiver<AskEvent>, Vec<Question>) {
        let receiver = self.events.subscribe();
        let mut state = self.lock();
        state.watchers += 1;
        let open = state.pending.values().map(|p| p.question.clone()).collect();
        (Watching { asks: self.clone() }, receiver, open)
    }

    /// The questions open now.
    pub fn pending(&self) -> Vec<Question> {
        self.lock().pending.values().map(|p| p.question.clone()).collect()
    }
}

/// A watcher's presence; dropped when it leaves.
pub struct Watching {
    asks: Asks,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut state = self.asks.lock();
        state.watchers = state.watchers.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nobody_watching_means_nobody_is_asked() {
        let asks = Asks::new(Duration::from_secs(60));
        assert_eq!(asks.ask("example.com", 443, "CONNECT", |_| panic!("asked")).await, Outcome::NoOne);
        let (watching, _, _) = asks.watch();
        drop(watching);
        assert_eq!(asks.ask("example.com", 443, "CONNECT", |_| panic!("asked")).await, Outcome::NoOne);
    }

    #[tokio::test]
    async fn requests_for_one_host_share_a_question_and_its_answer() {
        let asks = Asks::new(Duration::from_secs(60));
        let (_watching, mut events, open) = asks.watch();
        assert!(open.is_empty());
        let first = tokio::spawn({
            let asks = asks.clone();
            async move { asks.ask("example.com", 443, "CONNECT", |_| {}).await }
        });
        let Ok(AskEvent::Question(question)) = events.recv().await else { panic!("no question") };
        assert_eq!((question.host.as_str(), question.port, question.timeout_ms), ("example.com", 443, 60_000));
        let second = tokio::spawn({
            let asks = asks.clone();
            async move { asks.ask("example.com", 443, "CONNECT", |_| panic!("asked twice")).await }
        });
        // The second request joins the open question before it is answered.
        while asks.lock().pending.get(&question.id).is_none_or(|p| p.waiters.len() < 2) {
            tokio::task::yield_now().await;
        }
        let once = Answer::Once { by: "test".into() };
        assert_eq!(asks.answer(question.id, &once), Some(question.clone()));
        assert_eq!(first.await.unwrap(), Outcome::Answered(once.clone()));
        assert_eq!(second.await.unwrap(), Outcome::Answered(once));
        assert_eq!(events.recv().await.unwrap(), AskEvent::Settled { id: question.id, outcome: "allowed once (test)".into() });
        assert_eq!(asks.answer(question.id, &Answer::Deny { reason: "late".into() }), None);
    }

    #[tokio::test]
    async fn an_unanswered_question_times_out_and_open_questions_are_bounded() {
        let asks = Asks::new(Duration::from_millis(300));
        let (_watching, _events, _) = asks.watch();
        let waiting: Vec<_> = (0..MAX_PENDING)
            .map(|i| {
                let asks = asks.clone();
                tokio::spawn(async move { asks.ask(&format!("h{i}.example"), 443, "CONNECT", |_| {}).await })
            })
            .collect();
        while asks.pending().len() < MAX_PENDING {
            tokio::task::yield_now().await;
        }
        assert_eq!(asks.ask("one-more.example", 443, "CONNECT", |_| panic!("asked")).await, Outcome::TooMany);
        for task in waiting {
            assert_eq!(task.await.unwrap(), Outcome::TimedOut(Duration::from_millis(300)));
        }
        assert!(asks.pending().is_empty());
    }
}
