//! One decision: a Cedar request evaluated against one snapshot, with its reasons,
//! evaluation errors and obligations.

use std::collections::BTreeSet;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entity, EntityId, EntityTypeName, EntityUid,
    Request,
};

use crate::engine::Snapshot;
use crate::error::PdpError;
use crate::policies::PolicyDigest;

/// What the caller asks: may `principal` do `action` on `resource`?
#[derive(Debug, Clone)]
pub struct DecisionRequest {
    pub principal: EntityUid,
    pub action: EntityUid,
    pub resource: EntityUid,
    /// The request context as JSON; checked against the action's context type.
    pub context: serde_json::Value,
    /// Entities for this request only (already vetted by `Snapshot::request_entities`).
    pub entities: Vec<Entity>,
}

/// A policy whose evaluation errored (and was therefore skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationError {
    pub policy_id: String,
    pub message: String,
}

/// The answer. A value, never an error: errors in policies are part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// The determining policies: the satisfied permits of an allow, the satisfied
    /// forbids of a deny (empty for the default deny).
    pub reasons: Vec<String>,
    pub errors: Vec<EvaluationError>,
    /// The obligations of the determining permit policies (only on allow).
    pub obligations: Vec<String>,
    /// The policy set the decision was made under.
    pub policy_set: PolicyDigest,
    /// True when Cedar would have allowed, but a forbid policy errored and writ
    /// denied instead: a forbid that cannot be evaluated must not let an action through.
    pub failed_closed: bool,
}

/// Builds a UID from a type name and an id, refusing a malformed type name.
pub fn entity_uid(type_name: &str, id: &str) -> Result<EntityUid, PdpError> {
    let name = EntityTypeName::from_str(type_name).map_err(|error| PdpError::InvalidUid {
        uid: format!("{type_name}::{id:?}"),
        reason: error.to_string(),
    })?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

impl Snapshot {
    /// Decides one request.
    pub fn decide(&self, request: &DecisionRequest) -> Result<Decision, PdpError> {
        self.decide_with_parents(request, &[])
    }

    /// Decides one request in which the principal has `extra_parents` besides its
    /// stored ones, for this request only (an active break-glass elevation is a role
    /// the principal holds for the elevation's lifetime). The principal must be a
    /// stored entity for it to get parents.
    pub fn decide_with_parents(
        &self,
        request: &DecisionRequest,
        extra_parents: &[EntityUid],
    ) -> Result<Decision, PdpError> {
        let schema = self.policies().schema();
        self.check_known(&request.principal, &request.action, &request.resource)?;
        let context =
            Context::from_json_value(request.context.clone(), Some((schema, &request.action)))
                .map_err(|error| PdpError::InvalidContext {
                    reason: error.to_string(),
                })?;
        let cedar_request = Request::new(
            request.principal.clone(),
            request.action.clone(),
            request.resource.clone(),
            context,
            Some(schema),
        )
        .map_err(|error| PdpError::InvalidRequest {
            reason: error.to_string(),
        })?;

        let extended;
        let entities = if request.entities.is_empty() && extra_parents.is_empty() {
            self.entities()
        } else {
            let mut entities = self.entities().clone();
            if !extra_parents.is_empty() {
                let stored = entities.get(&request.principal).cloned().ok_or_else(|| {
                    PdpError::InvalidEntity {
                        reason: format!(
                            "`{}` is not stored, so it cannot hold an elevation",
                            request.principal
                        ),
                    }
                })?;
                let (uid, attrs, mut parents) = stored.into_inner();
                parents.extend(extra_parents.iter().cloned());
                let elevated =
                    Entity::new(uid, attrs, parents).map_err(|error| PdpError::InvalidEntity {
                        reason: error.to_string(),
                    })?;
                entities = entities
                    .upsert_entities([elevated], Some(schema))
                    .map_err(|error| PdpError::InvalidEntity {
                        reason: error.to_string(),
                    })?;
            }
            if !request.entities.is_empty() {
                entities = entities
                    .add_entities(request.entities.iter().cloned(), Some(schema))
                    .map_err(|error| PdpError::InvalidEntity {
                        reason: error.to_string(),
                    })?;
            }
            extended = entities;
            &extended
        };

        let response =
            Authorizer::new().is_authorized(&cedar_request, self.policies().set(), entities);
        let diagnostics = response.diagnostics();
        let reasons: Vec<String> = diagnostics
            .reason()
            .map(ToString::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let errors: Vec<EvaluationError> = diagnostics
            .errors()
            .map(|error| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
                EvaluationError {
                    policy_id: error.policy_id().to_string(),
                    message: error.inner().to_string(),
                }
            })
            .collect();
        let cedar_allows = response.decision() == CedarDecision::Allow;
        let forbid_errored = errors
            .iter()
            .any(|e| self.policies().is_forbid(&e.policy_id));
        let allow = cedar_allows && !forbid_errored;
        let obligations = if allow {
            reasons
                .iter()
                .flat_map(|id| self.policies().obligations_of(id).iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        Ok(Decision {
            allow,
            reasons: if cedar_allows && !allow {
                Vec::new()
            } else {
                reasons
            },
            errors,
            obligations,
            policy_set: self.policies().digest(),
            failed_closed: cedar_allows && forbid_errored,
        })
    }

    /// Decides many requests against this one snapshot, in order.
    pub fn decide_batch(&self, requests: &[DecisionRequest]) -> Vec<Result<Decision, PdpError>> {
        requests
            .iter()
            .map(|request| self.decide(request))
            .collect()
    }

    /// Refuses an action or entity type the schema does not declare, with a precise error.
    fn check_known(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Result<(), PdpError> {
        let schema = self.policies().schema();
        if !schema.actions().any(|known| known == action) {
            return Err(PdpError::UnknownAction {
                action: action.to_string(),
            });
        }
        for uid in [principal, resource] {
            if !schema.entity_types().any(|known| known == uid.type_name()) {
                return Err(PdpError::UnknownEntityType {
                    entity_type: uid.type_name().to_string(),
                });
            }
        }
        Ok(())
    }
}
